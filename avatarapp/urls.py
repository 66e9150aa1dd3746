from django.contrib import admin
from django.urls import include, path

from avatarapp import health
from avatarapp.api.main import api
from avatarapp.front import urls as front_urls
from avatarapp.front.auth_views import admin_login
from avatarapp.sharing import urls as sharing_urls

urlpatterns = [
    path("api/v1/", api.urls),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    # The admin's own sign-in page, throttled like every other (before admin.site.urls, which has it too).
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include(front_urls)),
    path("", include(sharing_urls)),
]

handler404 = "avatarapp.front.views.not_found"
handler500 = "avatarapp.front.views.server_error"
