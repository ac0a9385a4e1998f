"""Does a default run on a small folder give images of every class a classifier of real images recognises?

    python benchmarks/small_folder.py /tmp/small-folder                 # bagan_train.py's defaults, 32x32
    python benchmarks/small_folder.py /tmp/small-folder --image-size 64 --json
    python benchmarks/small_folder.py /tmp/small-folder --judge-per-class 200    # the judge of 2026-12-05/06
    python benchmarks/small_folder.py /tmp/small-folder --seed 1 --every-evaluation   # every evaluated epoch judged

Writes smallfolder.py's folder (353 16-bit 70x90 images in four classes of 300, 30, 15 and 8) into
FOLDER/data, trains `bagan_train.py --dataset FOLDER/data --image-size S` with nothing else into
FOLDER/run (or reuses a finished run there), then trains an independent judge
(evaluators.train_judge) on a fresh balanced folder of the same kind (`--judge-per-class` images
per class, another seed; checked on the run's held-out images) and reports the share of the run's
generated images of each class it recognises, for the generator the commands use (the best when the
run kept one) and the last, beside the share of the folder's own real images (training and test) it recognises: the
scale, since a judge that knows a class's real images only at 60% cannot be expected to see more in
generated ones. The goal: at least 80% in every class, with the whole run in about 20 minutes on two
cores. Exit status 1 when a class is below the goal.

With --every-evaluation the run (trained by this script then, with the same defaults) also keeps the
generator of every evaluated epoch in FOLDER/evaluated/, and the judge scores each of them beside the
run's own judge's worst class (history.csv): which epoch a rule keeps against what it could have kept.
"""
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

GOAL = 0.8
PER_CLASS = 200
JUDGE_PER_CLASS = 1000


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="where the data and the run go (the run is reused when it is finished)")
    p.add_argument("--image-size", type=int, default=32, choices=(32, 64))
    p.add_argument("--seed", type=int, default=0, help="seed of the folder's images (the run keeps its default)")
    p.add_argument("--judge-per-class", type=int, default=JUDGE_PER_CLASS,
                   help=f"fresh images per class the judge trains on (default {JUDGE_PER_CLASS})")
    p.add_argument("--every-evaluation", action="store_true",
                   help="keep and judge the generator of every evaluated epoch (FOLDER/evaluated/)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import bagan_train
    from datasets import load_dataset
    from evaluators import predict, train_judge
    from runs import GENERATOR_FILE, Run, load_model
    from smallfolder import make_small_folder
    data_dir, run_dir = os.path.join(args.folder, "data"), os.path.join(args.folder, "run")
    if not os.path.isdir(data_dir):
        make_small_folder(data_dir, seed=args.seed)
    started = time.time()
    evaluated_dir = os.path.join(args.folder, "evaluated")
    if not os.path.isfile(os.path.join(run_dir, GENERATOR_FILE)):
        if args.every_evaluation:
            config = bagan_train.TrainConfig.create(dataset=data_dir, image_size=args.image_size)
            bagan_train.train(config, run_dir, verbose=2, callbacks=[keep_evaluated(config, evaluated_dir)])
        else:
            code = bagan_train.main(["--dataset", data_dir, "--image-size", str(args.image_size), "--out", run_dir])
            if code:
                return code
    run = Run.open(run_dir)
    c = run.config
    data = load_dataset(data_dir, image_size=c["image_size"], seed=c["seed"], resize=c["resize"])
    fresh_dir = os.path.join(args.folder, f"judge-data-{args.judge_per_class}")
    if not os.path.isdir(fresh_dir):
        make_small_folder(fresh_dir, [args.judge_per_class] * data.num_classes, seed=args.seed + 1)
    fresh = load_dataset(fresh_dir, image_size=c["image_size"], seed=c["seed"], resize=c["resize"])
    fresh = dataclasses.replace(fresh, x_train=np.concatenate([fresh.x_train, fresh.x_test]),
                                y_train=np.concatenate([fresh.y_train, fresh.y_test]), x_test=data.x_test,
                                y_test=data.y_test)
    judge, check = train_judge(fresh, seed=c["seed"] + 1, epochs=15)
    real_x, real_y = np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])
    real_guess = np.argmax(predict(judge, real_x), axis=1)
    shares = {"real": [float(np.mean(real_guess[real_y == label] == label)) for label in range(data.num_classes)]}
    for which in ("commands", "last"):
        shares[which] = recognised(run.load_generator(None if which == "commands" else "last"), judge, data.num_classes)
    evaluated = {}
    if os.path.isdir(evaluated_dir):
        own = {int(row["epoch"]): row for row in run.history() if row["phase"] == "gan" and row.get("kid_worst")}
        for name in sorted(os.listdir(evaluated_dir)):
            epoch = int(name.split("_")[1].split(".")[0])
            own_worst = (min(float(own[epoch][f"recognised/{n}"]) for n in data.class_names) if epoch in own
                         else None)
            evaluated[epoch] = dict(judged=recognised(load_model(os.path.join(evaluated_dir, name)), judge,
                                                      data.num_classes), own_worst=own_worst)
    _, described = run.generator_choice()
    result = dict(run_dir=run_dir, generator=described, training_seconds=run.training_seconds(),
                  precision=c.get("precision"), budget=c.get("budget"), judge=check,
                  recognised=dict(zip(data.class_names, shares["commands"])),
                  recognised_last=dict(zip(data.class_names, shares["last"])),
                  recognised_real=dict(zip(data.class_names, shares["real"])), train_counts=data.train_counts(),
                  goal=GOAL, minimum=min(shares["commands"]), seconds=round(time.time() - started, 1),
                  evaluated=evaluated)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"run {run_dir}: the commands use the {described} generator; training "
              f"{result['training_seconds'] / 60:.1f} min, precision {c.get('precision')}")
        print(f"{'class':>12} {'train imgs':>10} {'real images recognised':>23} {'generated':>10} {'(last)':>7}")
        for c_, (name, count) in enumerate(zip(data.class_names, data.train_counts())):
            print(f"{name:>12} {count:>10} {shares['real'][c_]:>23.1%} {shares['commands'][c_]:>10.1%} "
                  f"{shares['last'][c_]:>7.1%}")
        if evaluated:
            print(f"every evaluated epoch: {'epoch':>5} {'run judge worst':>15}  this judge, per class")
            for epoch, row in evaluated.items():
                own = "" if row["own_worst"] is None else f"{row['own_worst']:.2f}"
                print(f"{'':>22}{epoch:>5} {own:>15}  " + " ".join(f"{v:6.1%}" for v in row["judged"]))
        print(f"lowest class: {min(shares['commands']):.1%} (goal: at least {GOAL:.0%})")
    return 0 if min(shares["commands"]) >= GOAL else 1


def recognised(generator, judge, num_classes):
    """Per class, the share of PER_CLASS generated images the judge gives their class."""
    from datasets import to_uint8
    from evaluators import predict
    from runs import generated_batches
    shares = []
    for label in range(num_classes):
        images = np.concatenate([to_uint8(b) for b in generated_batches(generator, label, PER_CLASS, 100, seed=1)])
        shares.append(float(np.mean(np.argmax(predict(judge, images), axis=1) == label)))
    return shares


def keep_evaluated(config, folder):
    """A callback that saves the sampling generator of every epoch the run evaluates (and the last)."""
    import keras
    from runs import save_model

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                os.makedirs(folder, exist_ok=True)
                save_model(self.model.sampling_generator(), os.path.join(folder, f"epoch_{epoch + 1:03d}.keras"))
    return Keep()


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
