import os
import threading

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")
application = get_wsgi_application()

# The face detector takes most of a second to build: do it beside the first requests, not in
# the first upload (uploads wait for it under the detector's lock if they come sooner).
from avatarapp.faces.detect import warm_up  # noqa: E402 - needs the settings above

threading.Thread(target=warm_up, name="face-detector-warm-up", daemon=True).start()
