"""Stateful sessions: records of a language model's state kept between requests (`records`),
where they live (`store`: the replica's memory, written through to Redis) and the operations the
routes run on them (`service`)."""
