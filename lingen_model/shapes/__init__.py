"""The procedural "shapes world" the embedded model learns: scenes, rendering, captions and the eval
prompt sets (:mod:`.world`), and the judge that scores a generated clip against its prompt (:mod:`.judge`)."""
