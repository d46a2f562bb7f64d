"""Few-shot data: torchmeta task loaders (through the torchmeta shim), the Strokes and
CARS datasets, the device-resident sampler and the image cache."""
