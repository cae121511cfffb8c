"""The alerts role: rules over the stored events, raised into headwater.alerts (headwater/alerts.py)."""
