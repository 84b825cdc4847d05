"""A small 3-D SPADE example: procedural label volumes, a volume decoder built on ``spadenorm.SPADE(spatial_dims=3)``,
and an alignment score of generated volumes against their label volumes. Run it with ``examples/volume_demo.py``."""
