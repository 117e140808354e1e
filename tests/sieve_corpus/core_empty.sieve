# A script that does nothing: the implicit keep files the message.
