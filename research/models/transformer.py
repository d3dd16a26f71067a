"""Transformer encoder blocks (pre-LayerNorm), shared by the ViT and text classifiers."""
import flax.linen as nn
import jax.numpy as jnp

from research.models import layers


class EncoderBlock(nn.Module):
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    y = nn.LayerNorm()(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout,
                                        deterministic=not train)(y, y, mask=mask)
    x = x + drop(y)
    y = nn.LayerNorm()(x)
    y = layers.Dense(x.shape[-1])(drop(nn.gelu(layers.Dense(self.mlp_dim)(y))))
    return x + drop(y)


class Encoder(nn.Module):
  """Learned position embeddings, ``depth`` blocks and a final LayerNorm over (B, T, D)."""
  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    position = self.param("position_embedding", nn.initializers.normal(0.02), x.shape[1:])
    x = nn.Dropout(self.dropout, deterministic=not train)(x + position)
    for _ in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout)(x, mask, train)
    return nn.LayerNorm()(x)


def mean_pool(x: jnp.ndarray, valid=None) -> jnp.ndarray:
  """Mean over the sequence axis, of the valid positions only when ``valid`` is given."""
  if valid is None:
    return x.mean(axis=1)
  valid = valid[..., None].astype(x.dtype)
  return (x * valid).sum(axis=1) / jnp.maximum(valid.sum(axis=1), 1.0)
