"""``python -m cpc.viz --ckpt_path CKPT --out figures``: see :func:`cpc.viz.script.main`."""

from cpc.viz.script import main

if __name__ == "__main__":
    main()
