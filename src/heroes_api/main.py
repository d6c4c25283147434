"""The served app: ``uvicorn heroes_api.main:app``. Tests never import this module.

Importing it checks the settings and the database first, and ends the process with one line
saying what to fix when either cannot work; then it sets up logging as ``HEROES_LOG_FORMAT``
says, whoever serves the app (``make run``, plain uvicorn, gunicorn's uvicorn workers).
"""

import gc

from heroes_api import logs
from heroes_api.app import create_app
from heroes_api.preflight import settings_or_exit
from heroes_api.startup import database_or_exit

settings = settings_or_exit()
logs.configure(settings.log_format)
database_or_exit(settings)
app = create_app(settings)
# The served process's startup objects (modules, routes, models: ~100,000) live as long as it
# does. Moving them out of the cyclic collector's reach keeps its full collections from pausing
# every request in flight (measured ~110 ms each under load, the p99 spikes).
gc.freeze()
