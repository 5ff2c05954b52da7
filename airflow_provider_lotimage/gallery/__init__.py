"""The LotImage gallery: the pictures SaveImagesOperator stored, inside the Airflow UI (Airflow 3.1+).

An Airflow plugin (:mod:`.plugin`) mounts a small FastAPI app (:mod:`.app`) on the api-server and
adds it to the UI as a menu entry and as DAG and DAG-run tabs. What it shows comes only from what
the runs recorded (:mod:`.records`) and the JSON sidecars beside the pictures (:mod:`.index`):
there is no second database. Thumbnails are made once and cached (:mod:`.thumbnails`).
"""
