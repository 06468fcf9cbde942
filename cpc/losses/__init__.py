from cpc.losses.info_nce import info_nce

__all__ = ["info_nce"]
