from django.contrib import admin
from django.urls import path, re_path

from api.endpoints import api
from gallery.views import serve_media
from search.views import image_detail, search_page

# The admin says what it is, not "Django administration".
admin.site.site_header = admin.site.site_title = "Image search"
admin.site.index_title = "Library"

urlpatterns = [
    path("", search_page, name="search"),
    path("image/<int:pk>/", image_detail, name="image_detail"),
    path("admin/", admin.site.urls),
    re_path(r"^media/(?P<path>.+)$", serve_media, name="media"),
    path("", api.urls),  # /api/..., /knn-service, /indices-list, /metadata
]
