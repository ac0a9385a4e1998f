"""Wall time of one BAGAN-GP epoch (with its image grid and checkpoint) and peak memory.

    python benchmarks/bench_epoch.py [--dataset fashion_mnist] [--balanced] [--image-size 64]
                                     [--precision auto|float32|mixed_bfloat16] [--networks project|original]
                                     [--eval-every 1|0] [--steps N] [--json]

Runs bagan_train's GAN phase for one epoch on Fashion-MNIST (imbalanced by default; the autoencoder
phase is skipped, its networks start untrained), with every callback of a real run
(bagan_train.gan_callbacks, the in-training evaluation included unless --eval-every 0; its classifier
trains at the epoch's end, as in a run, and its time (history.csv's eval_classifier_seconds) is given
apart from the epoch's), then times the per-epoch pieces on their own: the Eq. 16 image grid, the
checkpoint and the GIF assembly.
Peak memory is the process's maximum resident set; a thread samples the resident set every 20 ms
to split it by stage (loading the data, importing TensorFlow and building the networks, the epoch,
the extras). `--steps` caps the generator steps of the epoch (the time is then also given per
step); memory does not depend on it.
"""
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import bagan_train  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RSSStages:
    """Resident set now and its peak within each stage, sampled by a thread every 20 ms (MB)."""

    def __init__(self, interval=0.02):
        import psutil
        self.process, self.interval = psutil.Process(), interval
        self.stage_peak, self.stages = 0, {}
        self.lock, self.running = threading.Lock(), True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _rss(self):
        return self.process.memory_info().rss

    def _sample(self):
        while self.running:
            with self.lock:
                self.stage_peak = max(self.stage_peak, self._rss())
            time.sleep(self.interval)

    def mark(self, stage):
        with self.lock:
            now = self._rss()
            self.stages[stage] = dict(peak_mb=round(max(self.stage_peak, now) / 2**20),
                                      end_mb=round(now / 2**20))
            self.stage_peak = 0

    def stop(self):
        self.running = False
        self.thread.join()


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--balanced", action="store_true", help="the balanced protocol (42,000 images)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto",
                   help="default auto: bagan_train.py's choice for this machine")
    p.add_argument("--networks", choices=["project", "original"], default=None, help="default: bagan_train.py's")
    p.add_argument("--eval-every", type=int, default=None,
                   help="the best-checkpoint evaluation (default: the dataset's, as in a normal run); 0: off")
    p.add_argument("--steps", type=int, default=None, help="cap on generator steps in the epoch")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    config = bagan_train.TrainConfig.create(
        dataset=args.dataset, data_dir=args.data_dir, imbalanced=not args.balanced, image_size=args.image_size,
        batch_size=args.batch_size, precision=args.precision, networks=args.networks, eval_every=args.eval_every,
        epochs=1, ae_epochs=0, steps_per_epoch=args.steps)
    config.choose_precision()

    from datasets import load_dataset
    rss = RSSStages()
    rss.mark("start")
    start = time.perf_counter()
    data = load_dataset(config.dataset, data_dir=config.data_dir, image_size=config.image_size,
                        imbalanced=config.imbalanced, seed=config.seed)
    load_s = time.perf_counter() - start
    rss_after_load = peak_rss_mb()
    rss.mark("load the data")

    import keras
    from autoencoder import build_decoder, build_embedding, build_encoder
    from callbacks import GRID_ROWS, assemble_gif, generate_grid_rows, image_grid
    from datasets import make_tf_dataset
    from runs import Autoencoder, Run, save_png
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    shape = data.x_train.shape[1:]
    untrained = Autoencoder(build_encoder(shape, config.latent_dim, config.networks),
                            build_embedding(data.num_classes, config.latent_dim),
                            build_decoder(shape, config.latent_dim, config.networks), supervised=True)
    model = config.model_class.build(data, untrained, **config.model_settings())
    model.compile(d_optimizer=bagan_train.adam(config, config.learning_rate),
                  g_optimizer=bagan_train.adam(config, config.g_learning_rate), jit_compile=config.xla)
    steps = config.steps_per_epoch_for(data)
    rss.mark("import TensorFlow, build the networks")
    with tempfile.TemporaryDirectory() as run_dir:
        run = Run.create(run_dir, config.record(data))
        evaluation = bagan_train.evaluation_classifier(config, data, run)  # called at the epoch's end
        batches = make_tf_dataset(data.x_train, data.y_train, config.batch_size, seed=config.seed,
                                  drop_remainder=True, repeat=True, steps_per_epoch=steps)
        with contextlib.redirect_stdout(sys.stderr):  # the classifier's console line; stdout is the result's
            epoch_s = timed(lambda: model.fit(batches, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0,
                                              callbacks=bagan_train.gan_callbacks(config, data, run, steps,
                                                                                  evaluation)))
        classifier_s = float(run.history()[-1].get("eval_classifier_seconds", 0.0))
        epoch_s -= classifier_s  # the classifier trains once per run, not per epoch
        rss.mark("epoch (pipeline, tracing, steps, callbacks, the evaluation and its classifier)")
        real_row = np.stack([data.x_train[data.y_train == c][0] for c in range(data.num_classes)])
        noise = np.random.default_rng(0).standard_normal((GRID_ROWS, config.latent_dim))
        grid_s = timed(lambda: save_png(os.path.join(run_dir, "grid.png"), image_grid(
            [real_row] + generate_grid_rows(model.generator, noise.astype(np.float32), data.num_classes))))
        checkpoint_s = timed(lambda: run.save_checkpoint(model.training_state(), 99, keep=3))
        gif_s = timed(lambda: assemble_gif(run.file("samples"), run.file("progress.gif")))
        rss.mark("grid, checkpoint, GIF")
    rss.stop()

    result = dict(
        dataset=args.dataset, imbalanced=not args.balanced, train_images=len(data.x_train),
        image_size=args.image_size, batch_size=args.batch_size, precision=config.precision, networks=config.networks,
        eval_every=config.eval_every,
        generator_steps=steps, load_s=load_s, epoch_s=epoch_s, s_per_step=epoch_s / steps,
        evaluation_classifier_s=classifier_s,
        grid_s=grid_s, checkpoint_s=checkpoint_s, gif_one_frame_s=gif_s,
        per_epoch_extras_share=(grid_s + checkpoint_s) / epoch_s,
        uint8_train_mb=data.x_train.nbytes / 2**20, peak_rss_after_load_mb=rss_after_load,
        peak_rss_mb=peak_rss_mb(), rss_stages_mb=rss.stages,
        env={k: v for k, v in os.environ.items() if k.startswith(("TF_ENABLE_ONEDNN", "TF_NUM_", "MALLOC_"))},
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.dataset} ({'balanced' if args.balanced else 'imbalanced'}), {len(data.x_train)} training "
              f"images at {args.image_size}x{args.image_size} ({result['uint8_train_mb']:.0f} MB uint8), "
              f"loaded in {load_s:.1f} s")
        print(f"one epoch, {steps} generator steps, {config.precision}, {config.networks} networks, evaluation "
              f"{'on' if evaluation else 'off'}: {epoch_s:.1f} s ({result['s_per_step']:.2f} s per step)"
              + (f"; getting its classifier took {classifier_s:.1f} s more, once per run" if evaluation else ""))
        print(f"per-epoch grid {grid_s:.3f} s, checkpoint {checkpoint_s:.3f} s "
              f"({result['per_epoch_extras_share']:.2%} of the epoch); GIF assembly {gif_s:.3f} s")
        print(f"peak resident memory: {result['peak_rss_mb']:.0f} MB "
              f"(after loading the data: {rss_after_load:.0f} MB)")
        for stage, mb in rss.stages.items():
            print(f"  {stage}: peak {mb['peak_mb']} MB, {mb['end_mb']} MB at its end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
