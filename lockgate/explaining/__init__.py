"""Why a model answers as it does, and the one page that documents each
registered version: attributions checked for completeness, permutation
importance, pictures and the model card."""
