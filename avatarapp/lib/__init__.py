"""Small single-purpose helpers with no models and no views: the bottom layer."""
