"""supplymon's supervisors' view: panels defined once (panels.py), Grafana dashboards
generated from them (grafana.py -> grafana/*.json), the same panels on the worker's page."""
