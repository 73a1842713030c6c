"""Scoring with trained reward models, in worker processes only.

``engine`` loads a saved reward model once per process (an LRU cache keyed by model id and path) and scores
prompt + response texts exactly as training did: the same tokenizer, chat template, truncation policy
(``build_pair_dataset``) and forward (``score_sequences``). ``batcher`` gathers requests that arrive within a
few milliseconds of each other into one length-sorted forward pass. torch is imported lazily: importing this
package (as the web process may, through services) costs nothing.
"""
