"""Classification with softmax cross-entropy: p(y|x) from a model's logits."""
import jax.numpy as jnp
import optax
from clu import metrics

from research.tasks import base


class Task(base.BaseTask):
  metrics = {
      "loss": metrics.Average.from_output("loss"),
      "accuracy": metrics.Average.from_output("accuracy"),
  }

  def loss_fn(self, params, model_state, batch, rng, train):
    logits, model_state = base.apply_model(
        self.model, params, model_state, batch["image"], rng=rng, train=train)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return loss.mean(), ({"loss": loss, "accuracy": accuracy}, model_state)
