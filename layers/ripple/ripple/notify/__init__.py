"""Notification delivery, the pure part: who gets what, on which channel, saying what.

A notification row is the in-app message itself; email and SMS are deliveries derived from
it. The IO module loads the notification, its recipients, their preferences, quiet hours and
the suppression list, then composes these modules:

- ``routing.plan``: one ``Decision`` per (recipient, email/SMS channel) — send, skip, defer,
  suppress or fail, with the resolved address;
- ``templates.Templates``: the subject, HTML and text of an email, or an SMS body;
- ``sms``: GSM-7/UCS-2 segment counts and ``fit`` to a segment budget;
- ``unsubscribe``: signed one-click unsubscribe tokens and the RFC 8058 headers;
- ``errors``: what to do about a SESv2/SNS error (retry, give up, suppress) and the backoff.

Nothing here touches a database or an AWS API.
"""
