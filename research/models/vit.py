"""Vision Transformer classifier: non-overlapping patches -> linear embedding ->
Transformer encoder -> mean-pooled tokens -> linear head."""
import flax.linen as nn

from research.models import layers, transformer


class Model(nn.Module):
  num_classes: int
  patch_size: int = 4
  hidden: int = 64
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 128
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    p = self.patch_size
    x = nn.Conv(self.hidden, (p, p), strides=(p, p), padding="VALID")(x)
    x = x.reshape(x.shape[0], -1, self.hidden)  # (batch, patches, hidden)
    x = transformer.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dropout)(x, train=train)
    return layers.classifier_head(self, transformer.mean_pool(x), self.num_classes)
