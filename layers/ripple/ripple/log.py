"""The one logger (Powertools), shared by every module."""
from aws_lambda_powertools import Logger

logger = Logger(service="ripple")
