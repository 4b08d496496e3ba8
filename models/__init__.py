"""rnnserve model library: tokenizers, vocabulary, recurrent networks, decoding, scoring and
checkpoints. Shared by the offline training CLIs and the serving app; imports neither."""
