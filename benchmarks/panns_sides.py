"""CNN14 sides: the Keras port (train.py's model, predict.py's function) against the PANNs
authors' own PyTorch network (`panns_inference.models.Cnn14`, `benchmarks.panns_reference`).

Both take batches of 5 s waveforms at 32 kHz (ESC-50's clips prepared for CNN14) and
end in a new 50-class head on the 2048-dim embedding, as fine-tuning on ESC-50 does
(PANNs' `Transfer_Cnn14`). Training follows PANNs' transfer recipe on both sides: Adam
with AMSGrad at 1e-4, SpecAugment on every clip (theirs inside the network in training
mode; ours the `Augment` layer of train.py's training model), dropout. Weights are
random: speed does not depend on them.

    python -m benchmarks.harness benchmarks.panns_sides:ours_train '{}'
"""

import numpy as np

from benchmarks.harness import Side

SAMPLE_RATE = 32000
NUM_SAMPLES = 5 * SAMPLE_RATE
NUM_CLASSES = 50
TRAIN_BATCH = 16
INFERENCE_BATCH = 32


def waveforms(batch, seed=0):
    """Seeded clips: tones of random pitch over noise, `[batch, NUM_SAMPLES]` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    tones = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000, (batch, 1)) * t)
    return (tones + 0.05 * rng.standard_normal((batch, NUM_SAMPLES))).astype("float32")


def labels(batch):
    return (np.arange(batch) % NUM_CLASSES).astype("int64")


def _ours():
    import keras_audio_cnn  # noqa: F401  (before TensorFlow: its oneDNN default)
    from benchmarks import sides

    return sides._tensorflow_facts()


def ours_train(backbone="panns_cnn14", batch=TRAIN_BATCH):
    """One training step of train.py's model of `backbone` with the PANNs recipe: the
    waveforms, every clip flagged for SpecAugment (the PANNs family augments every clip),
    the new 50-class head, Adam with AMSGrad."""
    facts = _ours()
    import tensorflow as tf

    from keras_audio_cnn import augment, config, devices, recipe

    run = config.TrainConfig().replace(backbone=backbone, weights="none")
    plan = augment.AugmentPlan.of(run)
    settings = devices.settings("float32", "auto")
    _, fitted, _ = recipe.compile_training_model(
        run.model, plan, settings, num_classes=NUM_CLASSES, sample_rate=SAMPLE_RATE,
        num_samples=NUM_SAMPLES, learning_rate=run.optim.learning_rate,
        weight_decay=run.optim.weight_decay, seed=0, amsgrad=run.optim.amsgrad)
    inputs = (tf.constant(waveforms(batch)), tf.ones([batch]))
    targets = tf.constant(labels(batch))
    info = dict(facts, augment=list(run.augment), amsgrad=run.optim.amsgrad,
                jit_compile=bool(fitted.jit_compile))
    return Side(lambda: fitted.train_on_batch(inputs, targets), batch, info)


def ours_inference(backbone="panns_cnn14", batch=INFERENCE_BATCH):
    """Waveforms to probabilities: a fold model's `export.inference_function` (predict.py's
    computation)."""
    facts = _ours()
    import tensorflow as tf

    from keras_audio_cnn import export, model as model_lib

    model = model_lib.build_model(backbone, NUM_CLASSES, SAMPLE_RATE, NUM_SAMPLES,
                                  weights="none")
    predict = export.inference_function(model)
    inputs = tf.constant(waveforms(batch))
    return Side(lambda: predict(inputs).numpy(), batch, facts)


def _reference(backbone):
    """The authors' network of `backbone` with a new 50-class head on its embedding."""
    import torch

    from benchmarks import panns_reference
    from keras_audio_cnn.backbones import panns

    network = panns_reference.reference(panns.variant(backbone), random_statistics=False)
    head = torch.nn.Linear(2048, NUM_CLASSES)
    facts = {"torch": torch.__version__, "threads": torch.get_num_threads(),
             "mkldnn": bool(torch.backends.mkldnn.is_available())}
    return network, head, facts


def reference_train(backbone="panns_cnn14", batch=TRAIN_BATCH):
    """One training step of `Transfer_Cnn14`'s computation: Cnn14 in training mode (its
    SpecAugment and dropout), a new head on the embedding, cross-entropy, Adam with
    AMSGrad at 1e-4 (PANNs' transfer recipe)."""
    import torch

    network, head, facts = _reference(backbone)
    network.train()
    parameters = [*network.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-4, amsgrad=True)
    inputs = torch.from_numpy(waveforms(batch))
    targets = torch.from_numpy(labels(batch))

    def step():
        loss = torch.nn.functional.cross_entropy(head(network(inputs)["embedding"]), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()

    return Side(step, batch, facts)


def reference_inference(backbone="panns_cnn14", batch=INFERENCE_BATCH):
    """Waveforms to probabilities: Cnn14 in eval mode, the head's softmax."""
    import torch

    network, head, facts = _reference(backbone)
    network.eval()
    inputs = torch.from_numpy(waveforms(batch))

    def predict():
        with torch.inference_mode():
            return torch.softmax(head(network(inputs)["embedding"]), dim=1).numpy()

    return Side(predict, batch, facts)

