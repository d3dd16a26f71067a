"""Transformer text classifier: word embeddings -> the shared Transformer encoder, with
attention only to the valid tokens -> mean over the valid tokens -> linear head.

Takes ``tokens`` (batch, length) int ids and ``lengths`` (batch,): positions at or past
an example's length are padding, and nothing they hold reaches the output.
"""
import flax.linen as nn
import jax.numpy as jnp

from research.models import layers, transformer


def valid_positions(tokens: jnp.ndarray, lengths: jnp.ndarray) -> jnp.ndarray:
  """(batch, length) booleans: True before each example's length."""
  return jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]


class Model(nn.Module):
  num_classes: int
  vocab_size: int
  hidden: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dropout: float = 0.0  # inside the encoder
  pooled_dropout: float = 0.1  # on the pooled features (cheap: one draw per feature)

  @nn.compact
  def __call__(self, tokens, lengths, train: bool = False):
    valid = valid_positions(tokens, lengths)
    x = nn.Embed(self.vocab_size, self.hidden)(tokens)
    x = transformer.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dropout)(
        x, mask=nn.make_attention_mask(valid, valid), train=train)
    x = nn.Dropout(self.pooled_dropout, deterministic=not train)(transformer.mean_pool(x, valid))
    return layers.classifier_head(self, x, self.num_classes)
