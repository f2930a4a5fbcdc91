"""The routes of `facerec serve`, one module per group (APIRouter)."""
