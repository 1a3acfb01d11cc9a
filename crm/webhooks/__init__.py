"""Vendor webhooks that produce CRM events (SMS, email); registered with the inbox in CrmConfig.ready."""
