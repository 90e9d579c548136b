"""Files: atomic writes, hashes and sizes (:mod:`.files`), mp4 reading and writing (:mod:`.video`),
prompts files (:mod:`.prompts`)."""
