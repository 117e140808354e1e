if header :is "subject" "oops { keep; }
