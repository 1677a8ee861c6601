"""The study's chat-text retention card (policy, due date, last deletion) for console pages."""

from django import template

from studyplatform.chat.retention import retention_status

register = template.Library()


@register.inclusion_tag("console/_retention.html")
def retention_card(study):
    return {"study": study, "retention": retention_status(study)}
