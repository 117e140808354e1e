if header :is :comparator "i;klingon" "subject" "x" { keep; }
