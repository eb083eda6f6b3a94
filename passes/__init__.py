"""Rewrites over strata IR: fusion, layout, tiling, lowering and export."""
