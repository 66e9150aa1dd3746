from django.contrib import admin
from django.urls import include, path

from avatarapp import health
from avatarapp.api.main import api
from avatarapp.front import urls as front_urls
from avatarapp.sharing import urls as sharing_urls

urlpatterns = [
    path("api/v1/", api.urls),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include(front_urls)),
    path("", include(sharing_urls)),
]

handler404 = "avatarapp.front.views.not_found"
handler500 = "avatarapp.front.views.server_error"
