"""The paint studio: what ``paint.py`` runs. Paint a label map in the browser; a generator draws it as you paint.

* ``renderer``: :class:`~spade_gan.studio.renderer.Renderer`, a loaded generator with its classes, drawing one
  painted map at a time through :func:`spade_gan.synthesis.inference.generate`;
* ``server``: the HTTP server (the standard library's ``ThreadingHTTPServer``), its routes and error answers;
* ``codec``: label maps and images as they travel between page and server (base64 ids, label-map PNGs);
* ``validation_maps``: the maps a painting can start from;
* ``errors``: :class:`~spade_gan.studio.errors.StudioError`, a request answered with a 4xx status;
* ``static/``: the page, its script and style sheet, served by the app (nothing is fetched from elsewhere).

Imports ``synthesis`` (the model and the one call into the generator), ``data`` (class lists, label semantics) and
``images``; nothing imports it.
"""
