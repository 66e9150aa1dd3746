from django.urls import path

from avatarapp.front import account_views, auth_views, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("consent", account_views.consent, name="consent"),
    path("upload", views.upload, name="upload"),
    path("photos/<uuid:photo_id>/style", views.choose_pack, name="choose_pack"),
    path("jobs/<uuid:job_id>", views.job_progress, name="job_progress"),
    path("jobs/<uuid:job_id>/cancel", views.cancel_job, name="cancel_job"),
    path("gallery", views.gallery, name="gallery"),
    path("results/<uuid:output_id>", views.result, name="result"),
    path("results/<uuid:output_id>/delete", views.delete_result, name="delete_result"),
    path("results/<uuid:output_id>/share", views.share_result, name="share_result"),
    path("packs/<slug:slug>/preview", views.pack_preview, name="pack_preview"),
    path("account", account_views.your_data, name="your_data"),
    path("account/consent/withdraw", account_views.withdraw_consent, name="withdraw_consent"),
    path("account/photos/<uuid:photo_id>/delete", account_views.delete_photo, name="delete_photo"),
    path("account/export", account_views.export, name="export_data"),
    path("account/sign-out", account_views.sign_out, name="sign_out"),
    path("account/sign-out-everywhere", account_views.sign_out_everywhere, name="sign_out_everywhere"),
    path("account/delete", account_views.delete_account, name="delete_account"),
    path("sign-up", auth_views.sign_up, name="sign_up"),
    path("sign-in", auth_views.sign_in, name="sign_in"),
    path("password-reset", auth_views.reset_password, name="reset_password"),
    path("password-reset/code", auth_views.reset_with_code, name="reset_with_code"),
    path("password-reset/<str:uidb64>/<str:token>", auth_views.reset_with_link, name="reset_with_link"),
    path("offline", views.offline, name="offline"),
    path("sw.js", views.service_worker, name="service_worker"),
    path("manifest.webmanifest", views.web_manifest, name="web_manifest"),
]
