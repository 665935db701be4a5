"""synthpre: synthetic pre-training of T5 encoder-decoder models.

Pipeline stages, one module each: ``synthpre.tasks`` (generators), ``synthpre.data`` (streaming
batches and export), ``synthpre.model`` (T5 configs), ``synthpre.train`` (the engine),
``synthpre.init`` (initialization schemes from statistics), ``synthpre.downstream`` (real tasks),
``synthpre.experiments`` (studies, results, tables).
"""

__version__ = "0.1.0"
