"""float64 by default: theory and exact computations need it (eigenvalues reach d^{-2 alpha})."""
import jax

jax.config.update("jax_enable_x64", True)
