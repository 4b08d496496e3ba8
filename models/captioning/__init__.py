"""Image captioning: CNN encoders, the recurrent decoder, decoding and the checkpoint loader."""
