require "fileinto";
if header :matches "subject" "I?have a * for you" { fileinto "Wild"; }
if header :matches "subject" "*\\?" { fileinto "Question"; }
if header :matches "x-caffeine" "C?H??N?O?" { fileinto "Chem"; }
