"""Postfix's SMTP-time lookups, answered by lda: a policy delegation
service (`lda policy`, check_policy_service) and a socketmap server (`lda
socketmap`, socketmap: tables), so that a message lda would refuse is
refused before Postfix queues it.  answers.py decides, from the code a
delivery runs; policy.py and socketmap.py speak the two protocols;
server.py listens."""
