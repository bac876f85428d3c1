"""Notifications: email over SMTP, Slack and Teams webhooks, PagerDuty paging, SMS (Twilio)."""

from soar_notify._connector import notify

__all__ = ["notify"]
