"""``python -m cpc.viz --ckpt_path CKPT --out figures``: see :func:`cpc.viz.script.main`."""

from cpc.viz.script import console_main

if __name__ == "__main__":
    console_main()
