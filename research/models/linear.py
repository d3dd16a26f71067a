"""A linear classifier on flattened inputs: logits = W x + b (logistic regression, linear SVM)."""
import flax.linen as nn

from research.models import layers


class Model(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return layers.classifier_head(self, layers.flatten(x), self.num_classes)
