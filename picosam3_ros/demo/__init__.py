"""``make demo``: the sensor node on the emulated IMX500 over the bundled clip, scored."""
