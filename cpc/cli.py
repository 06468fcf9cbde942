"""`cpc` command: LightningCLI over CPCModule and the image data modules."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from cpc.data.datamodule import ImageDataModule
from cpc.module import CPCModule


def cli_main(args: list[str] | None = None) -> LightningCLI:
    """Entry point of ``cpc fit --config configs/fashion_mnist.yaml``; callable from tests."""
    return LightningCLI(
        CPCModule,
        ImageDataModule,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def main() -> None:
    """Console script ``cpc``: returns None so the shell sees exit status 0 on success."""
    cli_main()


if __name__ == "__main__":
    main()
