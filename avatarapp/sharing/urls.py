from django.urls import path

from avatarapp.sharing import views

urlpatterns = [
    path("s/<str:token>", views.share_page, name="share_page"),
    path("s/<str:token>/card.jpg", views.share_card, name="share_card"),
    path("s/<str:token>/image", views.share_image, name="share_image"),
    path("s/<str:token>/report", views.report_share, name="report_share"),
]
