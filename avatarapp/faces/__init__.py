"""Faces in the web process: finding them at upload (detect) and framing a portrait around one (framing).

Only dlib's HOG detector lives here: it is built into dlib, needs no weights file and no
torch, and answers in tens of milliseconds on a downscaled copy. Landmarks, the face
embedder and the skin-tone measure are the worker's (worker/faces.py).
"""
