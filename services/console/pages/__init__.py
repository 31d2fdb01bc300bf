"""What each page shows, assembled from the services' answers into plain values for the templates."""
