"""Pure machine-learning code for simlabel: autoencoder, embedding, map layout,
clustering and similarity search.

Nothing here imports Django, DRF or Celery; the web side calls these functions
with arrays and callbacks.  Heavy libraries (torch, openTSNE, umap) are imported
by the modules that need them, so importing this package is cheap.
"""
