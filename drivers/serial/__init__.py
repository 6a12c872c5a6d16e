"""RS-232 for every family that uses a serial port: the pyserial transport on the
event loop (transport.py), the reconnecting link around a codec (link.py) and the
line-profile transport descriptor (line.py). The codecs live in their families'
folders (drivers/<family>/); drivers/registry.py selects them."""
