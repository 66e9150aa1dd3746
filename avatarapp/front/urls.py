from django.urls import path

from avatarapp.front import views
from avatarapp.sharing import views as share_views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("consent", views.consent, name="consent"),
    path("upload", views.upload, name="upload"),
    path("photos/<uuid:photo_id>/style", views.choose_pack, name="choose_pack"),
    path("jobs/<uuid:job_id>", views.job_progress, name="job_progress"),
    path("jobs/<uuid:job_id>/cancel", views.cancel_job, name="cancel_job"),
    path("gallery", views.gallery, name="gallery"),
    path("results/<uuid:output_id>", views.result, name="result"),
    path("results/<uuid:output_id>/delete", views.delete_result, name="delete_result"),
    path("results/<uuid:output_id>/share", views.share_result, name="share_result"),
    path("packs/<slug:slug>/preview", views.pack_preview, name="pack_preview"),
    path("offline", views.offline, name="offline"),
    path("sw.js", views.service_worker, name="service_worker"),
    path("manifest.webmanifest", views.web_manifest, name="web_manifest"),
    path("s/<str:token>", share_views.share_page, name="share_page"),
    path("s/<str:token>/card.jpg", share_views.share_card, name="share_card"),
    path("s/<str:token>/image", share_views.share_image, name="share_image"),
    path("s/<str:token>/report", share_views.report_share, name="report_share"),
]
