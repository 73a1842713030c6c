"""HTML pages, one module per page group. Like the API views, they check the role, call a service or
selector, and render; none imports an API view."""
