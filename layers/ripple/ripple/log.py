"""The one logger (Powertools), shared by every module; handlers add the Lambda context to it
(see ripple.observability)."""
from aws_lambda_powertools import Logger

logger = Logger(service="ripple")
