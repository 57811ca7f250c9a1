from django.apps import AppConfig


class MailwebConfig(AppConfig):
    name = "mailweb"
    verbose_name = "Mail store"
