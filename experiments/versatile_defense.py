"""Paper 003: the versatile defense (pix2pix purifier), the project's main job.

    python -m experiments.versatile_defense --steps=multi

NOT BUILT YET: this module is the command's placeholder until the versatile-defense issue
lands. It says so and exits with status 2 instead of pretending to run.
"""

from absl import app, flags

flags.DEFINE_enum("steps", "multi", ["multi", "single"], "loss-weight schedule (paper 3.2)")


def main(argv):
    del argv
    raise SystemExit(
        "experiments.versatile_defense is not built yet: the pix2pix purifier of paper 003 "
        "comes with its own issue. What runs today: python -m experiments.adversarial_finetuning "
        "--preset=quick (paper 001), see README.md.")


if __name__ == "__main__":
    app.run(main)
