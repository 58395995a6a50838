"""dialwhom connector for the Example CRM contacts API."""

from dialwhom_example_crm.connector import ExampleCrmConnector

__all__ = ["ExampleCrmConnector"]
__version__ = "0.1.0"
